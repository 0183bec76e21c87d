"""The durable half: storage, the stored records and the rules that make a stop lose nothing."""
