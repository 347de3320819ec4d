"""The core: operations that return results and raise only TruckctlError. No printing, no exits."""
