"""trace_gen"""
