// The design the big-module benchmark synthesises (bench/big/synth.ys).
module counter(input clk, input rst, output reg [15:0] q);
  always @(posedge clk) q <= rst ? 16'd0 : q + 16'd1;
endmodule
