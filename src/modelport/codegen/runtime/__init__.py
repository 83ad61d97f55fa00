"""Source files the targets embed or run beside generated code: the Java and JavaScript helper
code pasted into every generated class / module, the C runtime, and the check harnesses."""
