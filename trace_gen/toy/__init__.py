"""trace_gen/toy"""
