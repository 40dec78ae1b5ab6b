"""Datasets: procedural synthetic shapes and videos, and user image folders."""
