"""The one small library every process shares: settings base, JSON logging, gRPC bootstrap, errors."""
