"""pandagpt-demo: talk to PandaGPT (ImageBind + LoRA-tuned Vicuna) in a Gradio app or a terminal."""
