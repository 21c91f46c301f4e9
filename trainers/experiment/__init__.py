"""The paper's experiments as runnable recipes: SFT vs RL, ID vs OOD, against compute."""
