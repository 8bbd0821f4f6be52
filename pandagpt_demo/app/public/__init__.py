"""The bounds of a demo that strangers use for weeks: how many sessions and for how long, the upload
folder under its disk budget, and draining on a signal."""
