"""Ticket tables: reading, validation, splitting, and the Spanish demo simulator."""
