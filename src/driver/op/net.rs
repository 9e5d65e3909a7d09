//! Socket opcodes: the SQEs of net/.
