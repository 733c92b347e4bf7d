"""Audio: the log-mel front end and the encoders that turn 16 kHz speech into frame-aligned features."""
