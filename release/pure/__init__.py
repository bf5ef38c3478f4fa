"""The release tool's decisions: plain data in, plain data out. No AWS, no clock, no I/O; time is passed in."""
