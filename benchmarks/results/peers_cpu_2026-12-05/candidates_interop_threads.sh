for r in 1 2 3; do for shape in "patch_size=8 projection_dim=128 depth=6 num_heads=4 mlp_dim=256" "patch_size=4 projection_dim=192 depth=9 num_heads=12 mlp_dim=384"; do for inter in default 1; do
 args=""; for kv in $shape; do args="$args --model-arg $kv"; done
 if [ $inter = default ]; then envs=""; else envs="TF_NUM_INTEROP_THREADS=1"; fi
 out=$(env $envs TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/throughput.py --preset vit_tiny $args --augment none --steps 8 --epochs 3 2>/dev/null | tail -1)
 echo "round $r inter=$inter $(echo $shape | cut -d' ' -f2) $(echo $out | python -c 'import json,sys; r=json.load(sys.stdin); print(r["images_per_second"], r["images_per_second_range"])')"
done; done; done
