print("perf: to be written")
