"""Media: what the studio does with pictures, sound and video on this machine.

Probing, checking and converting inputs (images, audio, video), the local
renderer, posters, and serving stored files back with their verified types.
"""
