"""liftoff's release tool: the stage -> activate -> rollback gates of a stage, through its stack parameters."""
