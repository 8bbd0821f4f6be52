"""The Gradio page: its layout, its handlers, how attached files are previewed in the chat."""
