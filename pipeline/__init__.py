"""The whole run: ``physgm run`` chains the stages (data → pretrain → DPO → eval → serve) and
``physgm eval`` spans pretraining and DPO evaluation. Like ``physgm/cli.py`` it may import
every stage; no stage imports it."""
