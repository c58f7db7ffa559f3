accelerate launch train_dreambooth_lora_flux.py \
  --learning_rate=0.0001 \
  --train_text_encoder \
  --text_encoder_lr=5e-05 \
  --lr_scheduler=linear \
  --lr_warmup_steps=8 \
  --max_train_steps=60
