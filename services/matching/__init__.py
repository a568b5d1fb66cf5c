"""Supplier invoices matched to POs, receipts and usage; exception queues; payment status."""
