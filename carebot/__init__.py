"""carebot: customer-care assistant and helpdesk backend."""

__version__ = "0.1.0"
