"""The wiring: the topology table, the Faust apps built from it, the stage processor, backend choice (the only
place that builds backends from settings), the clients of the topics and the embedded services."""
