"""liftoff's reference service: the behaviour a service needs to live on liftoff."""
