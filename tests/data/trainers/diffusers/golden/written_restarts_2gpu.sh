accelerate launch --num_processes=2 train_dreambooth_lora.py \
  --learning_rate=0.0001 \
  --train_text_encoder \
  --lr_scheduler=cosine_with_restarts \
  --lr_warmup_steps=5 \
  --max_train_steps=60 \
  --lr_num_cycles=3
