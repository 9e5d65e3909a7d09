//! File opcodes: the SQEs of fs/.
