//! Bad input and access control: each gets its status and machine code.
