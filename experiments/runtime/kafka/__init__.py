"""Apache Kafka for a run: a KRaft broker (1 or 3 nodes) as local processes or containers, behind one protocol."""
