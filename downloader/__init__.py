"""The board's downloader: heartbeats, long-polls and fetches work into the spool."""
