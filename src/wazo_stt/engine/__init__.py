"""Speech engines behind one interface: model loading, chunking, word timestamps, segments."""
