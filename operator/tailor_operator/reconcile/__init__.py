"""Reconcile functions: plain async functions and classes that kopf handlers call, testable without kopf."""
