#!/usr/bin/env bash
# Pose-LSTM option sweep: the runs behind configs/poses-penn.yaml and the bundled pose_lstm.* (see
# src/structvid/assets/demo/TRAINING.md for the figures). Every run trains concurrently on the same
# machine (one GPU is plenty: the LSTMs are small and launch-bound) with `structvid train poses`, then
# `structvid evaluate poses --heldout` scores it on the sequences it held out (the same 64 for all runs:
# same data.val_fraction and train.seed). Results: $SWEEP/summary.json and each run's eval/poses.md.
#
#   DATA=../shared/data/penn_action SWEEP=runs/pose-sweep STEPS=8000 bash scripts/pose_sweep.sh
#
# SEEDS="0 1 2" repeats every run with each train.seed (run names get _s<seed>): the seed also draws the
# held-out part, so this measures a configuration on several different held-out parts, not just one;
# summary.json then also pools each run's seeds. CONFIG picks the base preset (default
# configs/poses-penn.yaml; configs/demo-poses.yaml is the CPU one). The three-part check in TRAINING.md:
#
#   CONFIG=configs/demo-poses.yaml DATA=../shared/data/penn_action SWEEP=runs/splits STEPS=3000 \
#     RUNS="h256_l2 h256_l2_rel" SEEDS="0 1 2" EVAL_ARGS=--mirror-average bash scripts/pose_sweep.sh
#
# With BUDGET=seconds instead of STEPS, a PROBE-step (200) probe of every run (all at once, as in the sweep) measures
# each one's rate and each run gets the steps it can do in 90% of BUDGET (the cosine schedule then ends on
# time); the step counts are in summary.json.
set -u
DATA=${DATA:-data/penn_action}
SWEEP=${SWEEP:-runs/pose-sweep}
STEPS=${STEPS:-8000}
BUDGET=${BUDGET:-0}              # seconds of training per run (0: STEPS steps each)
LIMIT=${LIMIT:-0}                # seconds after which unfinished runs are stopped (0: none)
PROBE=${PROBE:-200}              # steps of the rate probe (BUDGET)
RUNS=${RUNS:-}                   # space-separated run names to keep (default: all)
SEEDS=${SEEDS:-}                 # space-separated train.seed values (default: the preset's seed, no suffix)
CONFIG=${CONFIG:-configs/poses-penn.yaml}
EVAL_ARGS=${EVAL_ARGS:-}         # extra `evaluate poses` options, e.g. --mirror-average
SV=${SV:-structvid}              # e.g. "python3 -m structvid.cli" where the package is not installed
mkdir -p "$SWEEP"

# every run states its options against the same base: uniform step weights and no mirror averaging (the
# presets now set both; the runs that use them say so), so the figures in TRAINING.md stay reproducible
common=(--config "$CONFIG" --data "$DATA" train.log_every=100 train.lr_schedule=cosine train.step_weights=uniform
        model.mirror_average=false)
all=(data.extra_train_actions=[all])
speed=("data.speed=[0.8,1.25]")
declare -A runs=(
  [h1024_sq]="model.hidden_size=1024 train.loss=squared"
  [h1024_l2]="model.hidden_size=1024 train.loss=l2"
  [h1024_l2_all]="model.hidden_size=1024 train.loss=l2 ${all[*]}"
  [h1024_l2_all_speed]="model.hidden_size=1024 train.loss=l2 ${all[*]} ${speed[*]}"
  [h512_l2_all_speed_drop]="model.hidden_size=512 train.loss=l2 model.dropout=0.2 ${all[*]} ${speed[*]}"
  [h256_l2]="model.hidden_size=256 train.loss=l2"
  [h256_l2_all_speed]="model.hidden_size=256 train.loss=l2 ${all[*]} ${speed[*]}"
  [h256_sq_all_speed]="model.hidden_size=256 train.loss=squared ${all[*]} ${speed[*]}"
  [h256_l2_first16]="model.hidden_size=256 train.loss=l2 data.max_start=16"
  [h256_l2_wd0.3]="model.hidden_size=256 train.loss=l2 train.weight_decay=0.3"
  [h256_l2_short8]="model.hidden_size=256 train.loss=l2 data.min_horizon=8"
  [h256_l2_rel]="model.hidden_size=256 train.loss=l2 train.step_weights=relative"
  [h256_l2_rel_short8]="model.hidden_size=256 train.loss=l2 train.step_weights=relative data.min_horizon=8"
)
if [ -n "${RUNS:-}" ]; then  # RUNS="h256_l2 h1024_l2": only these
  for name in "${!runs[@]}"; do [[ " $RUNS " == *" $name "* ]] || unset "runs[$name]"; done
fi
if [ -n "$SEEDS" ]; then
  declare -A seeded=()
  for name in "${!runs[@]}"; do
    for seed in $SEEDS; do seeded[${name}_s$seed]="${runs[$name]} train.seed=$seed"; done
  done
  unset runs; declare -A runs=()
  for name in "${!seeded[@]}"; do runs[$name]=${seeded[$name]}; done
fi
declare -A steps
if [ "$BUDGET" -gt 0 ]; then
  pids=()
  for name in "${!runs[@]}"; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 $SV train poses "${common[@]}" --out "$SWEEP/probe/$name" ${runs[$name]} --no-progress \
      train.steps="$PROBE" train.checkpoint_every="$PROBE" >"$SWEEP/probe_$name.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  for name in "${!runs[@]}"; do
    steps[$name]=$(python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])];
rate=[x['train/steps_per_s'] for x in r if 'train/steps_per_s' in x][-1]; print(max(100, int(rate * $BUDGET * 0.9) // 100 * 100))" \
      "$SWEEP/probe/$name/metrics.jsonl")
    echo "$name: ${steps[$name]} steps"
  done
  rm -rf "$SWEEP/probe"
else
  for name in "${!runs[@]}"; do steps[$name]=$STEPS; done
fi
pids=()
for name in "${!runs[@]}"; do
  n=${steps[$name]}
  # shellcheck disable=SC2086  # the option strings split into overrides on purpose
  OMP_NUM_THREADS=1 $SV train poses "${common[@]}" --out "$SWEEP/$name" ${runs[$name]} --no-progress \
    train.steps="$n" train.checkpoint_every=$(( (n + 7) / 8 )) >"$SWEEP/$name.log" 2>&1 &
  pids+=($!)
done
if [ "$LIMIT" -gt 0 ]; then
  (sleep "$LIMIT"; kill "${pids[@]}" 2>/dev/null) &
fi
wait "${pids[@]}"
for name in "${!runs[@]}"; do
  # shellcheck disable=SC2086
  ($SV evaluate poses --checkpoint "$SWEEP/$name" --data "$DATA" --out "$SWEEP/$name/eval" --heldout $EVAL_ARGS \
    >>"$SWEEP/$name.log" 2>&1 || echo "$name: evaluation failed (see $SWEEP/$name.log)") &
done
wait
python3 "$(dirname "$0")/pose_sweep_summary.py" "$SWEEP"
