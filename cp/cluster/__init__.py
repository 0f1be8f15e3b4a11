"""The cluster server: streams config to data planes over mTLS gRPC and tracks what they run."""
