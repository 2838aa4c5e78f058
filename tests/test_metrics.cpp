// BLEU and chrF against values printed by sacreBLEU 2.5.1 with its defaults
// (BLEU: 13a, mixed case, exp smoothing; chrF: nc 6, nw 0, beta 2) on these sentences.
#include <gtest/gtest.h>

#include "thor/eval/metrics.h"

namespace {

const std::vector<std::string> kRefs = {
    "The cat sat on the mat.",
    "A man, who was 1,000.5 years old, walked to the store-front in New-York.",
    "Zwei Männer stehen am Ufer und schauen auf das Wasser.",
    "\"Hello,\" she said -- and left.",
    "It costs $20 (twenty dollars) & more!",
    "Short.",
    "An unrelated reference sentence here.",
};
const std::vector<std::string> kHyps = {
    "The cat is on the mat.",
    "A man who was 1,000.5 years old walked to the store front in New York.",
    "Zwei Männer stehen am Strand und sehen das Wasser an.",
    "\"Hello\", she said - and went away.",
    "It costs $20 (twenty dollars)&more !",
    "",
    "Nothing matches at all",
};

TEST(Metrics, Tokenizer13aMatchesSacrebleu) {
  EXPECT_EQ(thor::tokenize_13a(kRefs[1]),
            "A man , who was 1,000.5 years old , walked to the store-front in New-York .");
  EXPECT_EQ(thor::tokenize_13a(kRefs[3]), "\" Hello , \" she said -- and left .");
  EXPECT_EQ(thor::tokenize_13a(kRefs[4]), "It costs $ 20 ( twenty dollars ) & more !");
  EXPECT_EQ(thor::tokenize_13a("a.b 3-4 x,y 5.6 &amp; &lt;b&gt; A-\nB"), "a . b 3 - 4 x , y 5.6 & < b > AB");
}

TEST(Metrics, CorpusBleuMatchesSacrebleu) {
  auto b = thor::corpus_bleu(kHyps, kRefs);
  EXPECT_NEAR(b.score, 41.98, 0.005);
  EXPECT_EQ(b.hyp_len, 60);
  EXPECT_EQ(b.ref_len, 63);
  EXPECT_EQ(b.format().substr(0, 36), "BLEU = 41.98 75.0/50.0/35.4/28.6 (BP");
  auto two = thor::corpus_bleu({kHyps[0], kHyps[1]}, {kRefs[0], kRefs[1]});
  EXPECT_NEAR(two.score, 38.88, 0.005);
}

TEST(Metrics, BleuExpSmoothingAndBrevityPenalty) {
  auto b = thor::corpus_bleu({"the the the the"}, {"the cat sat on the mat today"});
  EXPECT_NEAR(b.score, 8.97, 0.005);  // 50.0/16.7/12.5/12.5, BP 0.472
  EXPECT_NEAR(b.bp, 0.472, 0.0005);
  EXPECT_NEAR(thor::corpus_bleu({"Nothing matches at all"}, {"An unrelated reference sentence here."}).score, 0.0, 1e-9);
}

TEST(Metrics, ChrfMatchesSacrebleu) {
  EXPECT_NEAR(thor::corpus_chrf(kHyps, kRefs).score, 60.87, 0.005);
  EXPECT_NEAR(thor::corpus_chrf({kHyps[0], kHyps[1]}, {kRefs[0], kRefs[1]}).score, 74.15, 0.005);
  EXPECT_NEAR(thor::corpus_chrf({kHyps[6]}, {kRefs[6]}).score, 6.68, 0.005);
  EXPECT_NEAR(thor::corpus_chrf({"the the the the"}, {"the cat sat on the mat today"}).score, 12.03, 0.005);
}

TEST(Metrics, PerfectMatchIs100) {
  EXPECT_NEAR(thor::corpus_bleu(kRefs, kRefs).score, 100.0, 1e-9);
  EXPECT_NEAR(thor::corpus_chrf(kRefs, kRefs).score, 100.0, 1e-9);
}

TEST(Metrics, LengthMismatchIsAnError) {
  EXPECT_THROW(thor::corpus_bleu({"a"}, {"a", "b"}), std::runtime_error);
}

}  // namespace
