"""One user's chat as data and logic: its exchanges and their versions, the files in use and their
weights, the embeddings already made, the JSON record. No Gradio here: the page, the APIs and the
terminal chat all drive the same `ChatSession`."""
