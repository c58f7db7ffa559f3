accelerate launch train_text_to_image_lora.py \
  --learning_rate=0.0001 \
  --lr_scheduler=cosine \
  --lr_warmup_steps=10 \
  --max_train_steps=60
