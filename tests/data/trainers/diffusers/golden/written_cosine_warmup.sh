accelerate launch train_dreambooth_lora.py \
  --learning_rate=0.0001 \
  --train_text_encoder \
  --lr_scheduler=cosine \
  --lr_warmup_steps=10 \
  --max_train_steps=60
