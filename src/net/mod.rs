//! Sockets through the ring: TCP, UDP and Unix domain sockets.
