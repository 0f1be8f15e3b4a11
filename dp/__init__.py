"""The data plane: DB-less proxy at the edge."""
