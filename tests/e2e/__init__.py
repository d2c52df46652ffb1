"""The real-kernel tier; a package so its VM fixture ends with its last test."""
