"""The open hand model (MANO format) and the script that builds it."""
