import os
import sys

# The tests import helpers that sit beside them (gaussian_laws, trace_counter, ...).
sys.path.insert(0, os.path.dirname(__file__))
