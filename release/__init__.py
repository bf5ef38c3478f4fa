"""liftoff's release tool: the stage -> activate -> rollback gates of a stage, through its stack parameters.

Its folders are its layers, and each imports only from the layers above it in this list
(tests/release/test_structure.py holds the rule):
- `pure/`: the decisions. Plain data in, plain data out: no AWS, no clock, no I/O; tested directly.
- `adapters/`: thin boto3 adapters. AWS's answers in, `pure`'s data out; nothing decided here.
- `flows/`: what a verb does, in order, with the stage's lock held: facts through the adapters, a decision
  from `pure`, then the change, the wait and the record.
- `cli.py`: parses the arguments, runs a flow, prints what it returns.
"""
