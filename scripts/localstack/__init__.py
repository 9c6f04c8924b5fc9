"""The local stack: diskrisk's real services as processes, for machines without Docker."""
