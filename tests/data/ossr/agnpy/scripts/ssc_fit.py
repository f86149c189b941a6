print("ssc fit")
