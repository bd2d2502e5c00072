"""The websockets: the event stream and the local-channel chat, and how both
authenticate without a token in the URL."""
