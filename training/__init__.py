"""Train a Sora-style DiT on the curated clips.

prepare.py (the Ray Data adapter: clips -> latents + text embeddings -> shards), data.py (shard format, encoder,
bucket-aware sampler), buckets.py, codecs.py (pixel / diffusers VAEs / spacetime AE), autoencoder.py (train_vae),
text.py (MiniLM / T5 / CLIP), dit.py (the model), diffusion.py (rectified flow), train.py (the loop, Ray Train for
multi-worker), sample.py (t2v / i2v / extension to mp4), demo.py (real-footage demo clips + overfit report).
"""
