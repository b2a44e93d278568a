# What a node's modules cost in the GC heap once loaded, run with the bundle
# directory as the script's path:
#   micropython -X heapsize=1M tests/firmware/code_heap_main.py BUNDLE mod1 mod2 ...
# Prints {"ev": "code_heap", "bytes": N}. On the unix port bytecode, function
# objects and qstrs live in the heap; on a board they are frozen into flash.
import gc
import json
import sys

sys.path.insert(0, sys.argv[1])
gc.collect()
before = gc.mem_alloc()
for name in sys.argv[2:]:
    __import__(name)
gc.collect()
print(json.dumps({"ev": "code_heap", "bytes": gc.mem_alloc() - before}))
