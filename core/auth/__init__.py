"""Keys and signatures: webhook signing and verification, and the local secrets file."""
