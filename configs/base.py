"""Defaults for every run: one table of hyperparameters.

Dataset configs (ml1m.py, beauty.py, ...) start from `get_config()` here and
override what differs. Any field can be overridden on the command line:
`--config.train.batch_size=256`. Values are checked at start
(`diff4rec_jax.config_lib.validate`); an unknown field is an error.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  # PRNG of the recommender's dropout and negative sampling. 'rbg' is much
  # cheaper than threefry on CPU and GPU; runs are reproducible either way.
  c.rng_impl = "rbg"           # rbg | threefry2x32 | unsafe_rbg
  # CPU only: run as this many XLA devices, data-parallel over the batch
  # (sharding.split_cpu). 0 = JAX's default (one device over all cores),
  # -1 = one per usable core (down to a divisor of the batch sizes). Set by
  # `main` before JAX starts; no effect on GPU/TPU. Opt-in: 2 devices train
  # SASRec-BCE 1.17-1.32x faster on the 2-core CPU (results/log/speed.md), but
  # when another job takes half the CPU, XLA's all-reduce rendezvous can
  # exceed its 40 s limit and abort the process (exit 134); resume then.
  c.cpu_devices = 0
  # base: recommender alone | aug: + diffusion augmentation, random order
  # ("w/o cur") | diff4rec: + curriculum order.
  c.mode = "base"

  c.data = ml_collections.ConfigDict(dict(
      name="ml-1m",            # key of data.DATASET_FILES
      dir="",                  # '' -> $DIFF4REC_DATA_DIR or ./data
      path="",                 # explicit file, overrides name lookup
      format="auto",           # auto | pair | per_user
      drop_short_users=False,  # users with < 3 actions: error unless True
      download=True,           # missing data: fetch + preprocess (datasets/)
      max_len=200,             # most recent items fed to the recommender
      # Training rows per user: 1 = the most recent max_len pairs of the
      # training prefix; w > 1 adds up to w - 1 earlier non-overlapping
      # windows of long prefixes; 0 = all (every pair a target once).
      train_windows=1,
  ))

  c.model = ml_collections.ConfigDict(dict(
      name="sasrec",           # sasrec | gru4rec | caser
      hidden=64,
      num_blocks=2,            # SASRec blocks / GRU layers
      num_heads=1,
      dropout=0.2,
      dropout_rng="hash",      # dropout masks: hash (fused integer hash;
                               # BCE train x1.25-1.32 on the 2-core CPU,
                               # results/log/speed.md) | prng
                               # (jax.random.bernoulli); models/dropout.py
      init_std=0.0,            # SASRec dense kernels ~ N(0, std^2); 0: LeCun
      attn_blocks=4,           # SASRec: causal attention in up to this many
                               # query blocks (>= 32 wide), skipping the
                               # masked triangle; same outputs (1 = off).
                               # 4 on the 2-core CPU: eval x1.24, BCE train
                               # x1.11 (results/log/speed.md)
      # SASRec switches where the PyTorch ports (SASRec+) differ from the
      # TF code / flax (models/sasrec.py):
      attn_dropout="shared",   # shared: one attention-dropout mask for the
                               # batch | per_row: per row and head (torch)
      qkv_init="dense",        # dense: as other kernels | torch: Xavier-
                               # uniform of the packed [3D, D] in_proj
      positions="newest",      # newest: newest item at max_len - 1 |
                               # oldest: the row's first item at 0
      # SASRec's matmul operands: float32 | bfloat16 (cast at each product,
      # float32 accumulation, parameters, layer norms and softmax).
      dtype="float32",
      caser_window=5,          # Caser: L, items per convolution window
      caser_h_filters=16,      # Caser: horizontal filters per height
      caser_v_filters=4,       # Caser: vertical filters
  ))

  c.train = ml_collections.ConfigDict(dict(
      loss="ce",               # ce: full softmax | bce: one sampled negative
                               # | sampled_ce: softmax over the target and
                               # num_negatives items shared by the batch
      num_negatives=1024,      # sampled_ce: S negatives per batch
      negative_sampler="uniform",  # sampled_ce: uniform | popularity (by
                               # training count, logQ-corrected)
      batch_size=128,
      num_epochs=200,
      optimizer="adam",        # adam | adamw
      lr=1e-3,
      lr_schedule="constant",  # constant | cosine (decays to 0 at num_epochs)
      lr_warmup_epochs=0,      # cosine: linear warmup from 0 over these
      b1=0.9,
      b2=0.98,
      weight_decay=0.0,
      # Evaluate (and keep as best) an exponential moving average of the
      # parameters, updated after every step with this decay; 0 = off.
      ema_decay=0.0,
      eval_every=5,            # epochs between validation evaluations
      patience=5,              # evaluations without improvement before stop
      checkpoint_every=5,      # epochs between 'latest' checkpoints
      eval_batch_size=256,
      eval_item_chunk=4096,    # items scored at once in full ranking
      mask_history=True,       # drop already-seen items from the ranking
      log_every_steps=0,       # progress line every N steps; 0: after the
                               # first step, then every 30 s
      # Batch widths: sequences are grouped by length and each batch is cut
      # to the smallest width that holds it (one compile per width). () =
      # every batch at data.max_len.
      length_buckets=(),
      # Widths of evaluation batches (users sorted by length, each batch cut
      # to the narrowest width that holds it); () = length_buckets. Only
      # the speed depends on them: finer is faster, one compile per width.
      eval_length_buckets=(),
      # Loss of a batch: 'batch' = mean over its target positions (a batch
      # of short rows then weighs as much as one of long rows); 'epoch' =
      # sum / the epoch's mean count per batch (each position weighs the
      # same, as with unbucketed random batches).
      loss_norm="batch",
      # Rows per micro-batch: the model runs over the batch in chunks of
      # this many rows (gradients summed), same result. -1 = auto (on CPU
      # at most 6,400 positions per chunk, so 32 rows at width 200 and one
      # pass at width <= 50: the chunks stay in cache, 1.2-1.7x faster;
      # off on GPU and TPU), 0 = off.
      micro_batch=-1,
  ))

  # The latent diffusion generator (paper section 3.2-3.3).
  # Checked by diff4rec_jax.config_lib.validate_generator_config.
  c.generator = ml_collections.ConfigDict(dict(
      enabled=True,            # False: no generator phase (mode 'base')
      seed=-1,                 # -1: the run's seed; >= 0: this one, so runs
                               # of several seeds can share one generator
      # VAE (Eq. 1-2): Mult-VAE with an embedding-bag first layer.
      latent_size=64,          # size of z
      encoder_hidden=(300,),   # L-DiffRec's encoder width; first = the bag
      decoder_hidden=(),       # () = one linear layer z -> items (L-DiffRec)
      act="tanh",
      dropout=0.5,             # input dropout on the bag (Mult-VAE)
      encoder_input="bag",     # bag: O(nnz x hidden) | dense: multi-hot rows
      history_cap=0,           # most recent unique train items fed to the
                               # encoder; 0 = the whole training prefix
      bag_chunk=4096,          # bag entries gathered per scan step; 0 = all
      kl_anneal_cap=0.2,       # beta ramps to this cap ...
      kl_anneal_steps=2000,    # ... over this many steps (0: cap at once)
      # Diffusion (Eq. 3-8).
      time_emb_size=10,        # sinusoidal timestep embedding (DiffRec)
      denoiser_hidden=(300,),
      denoiser_dropout=0.0,
      steps=5,                 # T
      schedule="linear",       # linear | linear-var | cosine
      noise_scale=0.1,         # betas in [scale*min, scale*max] (not cosine)
      noise_min=1e-4,
      noise_max=0.02,
      predict="eps",           # eps (Eq. 7) | z0 (L-DiffRec's x0 mode)
      lam=1.0,                 # lambda of Eq. 8
      stop_grad_z0=False,      # True: noise loss does not train the encoder
      # Inference (section 3.3).
      inference_step=5,        # corrupt mu(x) to this step, denoise to 0
      sampling_noise=False,    # False: mean-only reverse steps (DiffRec)
      top_m=100,               # M candidate items kept per user
      prob_norm="all",         # all: softmax over non-history items | topm
      infer_batch_size=512,
      # Optimization.
      lr=1e-3,
      weight_decay=0.0,        # AdamW decoupled decay
      batch_size=256,          # users per step (at most)
      batch_tokens=0,          # items per step (at most): the static bag
                               # size; 0 = 1.5 x batch_size x mean row length
      epochs=50,
      checkpoint_every=5,      # epochs between checkpoints (and at the end)
      eval_at_end=True,        # validation HR/NDCG@10: generator vs VAE
  ))

  # Interaction/objective augmentation and the curriculum (section 3.4).
  c.augment = ml_collections.ConfigDict(dict(
      num_copies=10,           # K augmented copies per user (paper: 10)
      # Where a copy's new items come from: generator (the paper: the
      # diffusion generator's top-M) | popular (the M most popular unseen
      # training items, p ~ count) | uniform (M random unseen items). The
      # last two are controls and skip the generator phase; the VAE alone
      # is generator.inference_step=0 (candidates.py). Also a control:
      # teacher (the top-M unseen items of the finished run in
      # teacher_workdir, trained on the same data, after each user's
      # training prefix; p = softmax of its scores over the M: distillation
      # from another model).
      candidates="generator",
      teacher_workdir="",      # a finished run's workdir, for 'teacher'
      # A user's own training items are never candidates (True), or may be
      # (False: a copy can repeat an item it has; the paper does not say).
      exclude_history=True,
      # What a copy is made from: recent (the newest data.max_len items of
      # the training prefix) | prefix (the whole prefix, then cut to the
      # newest max_len: a shuffled copy then samples the whole history).
      copy_source="recent",
      ratio=0.2,               # fraction of a sequence replaced per copy
      # ... at least this many items: n = max(round_half_up(ratio x N),
      # min(min_replaced, N)), then capped at the eligible candidates.
      # Algorithm 1 leaves the rounding open; with 0, ratio 0.1 replaces
      # nothing in a sequence of under 5 items (half of Beauty's copies:
      # benchmarks/copy_stats.py).
      min_replaced=0,
      top_m=100,               # M candidates per user: must equal
                               # generator.top_m (checked by the validator)
      temperature=1.0,         # candidates drawn ~ prob ** (1 / temperature)
      reorder=True,            # shuffle each copy (Algorithm 1 line 8)
      copies_per_batch=1.0,    # copies drawn per step = this x batch_size
      loss_weight=1.0,         # weight of the augmented loss (Eq. 10)
      # Normalizer of the copies' loss sum: mean (per copy target, so the
      # augmented term weighs loss_weight whatever the copy count) | sum
      # (per ORIGINAL target: Eq. 10's plain sum over copies; with
      # copies_per_batch=K every original brings K copies' worth of loss).
      loss_norm="mean",
      # Copies per step: paced (drawn with replacement from the admitted
      # part of the pool, as pacing_* admits it) | pop (Algorithm 1, line
      # 18: one pass through the pool in curriculum order, each copy once,
      # then uniform over all).
      schedule="paced",
      bucket_copies=True,      # cut each step's copies to a length bucket
                               # (train.length_buckets), as the originals
      curriculum_scope="global",  # global: one easy-to-hard sort of all
                               # copies | per_user: rounds of every user's
                               # k-th easiest copy (curriculum.pool_order)
      curriculum_direction="easy_first",  # easy_first: the paper (most
                               # similar first) | hard_first: the reverse,
                               # a control for the curriculum's own effect
      pacing="linear",         # linear | root | step: admitted pool fraction
      pacing_start=0.2,        # fraction of the pool admitted at step 0
      pacing_end=0.8,          # training fraction at which all are admitted
      pacing_stages=4,         # 'step' pacing: number of increments
      pacing_epochs=0,         # training length the pacing is laid over, in
                               # epochs; 0 = train.num_epochs (with early
                               # stopping a run may end before the whole
                               # pool is admitted)
      similarity_source="warmup",  # warmup: train a base recommender first
                                   # | checkpoint: its embeddings from a file
      similarity_checkpoint="",    # path, for similarity_source='checkpoint'
      warmup_epochs=10,        # epochs of the 'warmup' base recommender
      rescore_every=0,         # epochs between re-scoring with the current
                               # model (0 = never)
      batch_size=4096,         # users per compiled augmentation/scoring call
  ))
  return c
