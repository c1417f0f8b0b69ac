"""The edge runtime: a guard, local rules and a store-and-forward buffer beside a plant, fed by
signed policy bundles from the central twin (decision 0059)."""
