"""eval_harness"""
