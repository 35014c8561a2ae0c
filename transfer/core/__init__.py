"""The bottom floor: errors and exit codes, atomic files and digests, console logging, signals and
locks. Imports nothing else of the project.
"""
