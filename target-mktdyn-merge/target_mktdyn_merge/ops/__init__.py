"""What people run: the mktdyn command, check, report, verify."""
